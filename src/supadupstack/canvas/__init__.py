"""Stage package: canvas (see DESIGN.md)."""
