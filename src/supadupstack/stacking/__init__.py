"""Stage package: stacking (see DESIGN.md)."""
