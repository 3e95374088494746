"""Stage package: frames (see DESIGN.md)."""
