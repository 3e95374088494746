"""Stage package: classic (see DESIGN.md)."""
