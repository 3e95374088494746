"""Stage package: simulate (see DESIGN.md)."""
