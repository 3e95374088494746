"""Stage package: outputs (see DESIGN.md)."""
