"""Stage package: polish (see DESIGN.md)."""
