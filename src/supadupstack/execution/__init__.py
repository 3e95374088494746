"""Stage package: execution (see DESIGN.md)."""
