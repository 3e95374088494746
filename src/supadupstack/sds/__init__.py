"""Stage package: sds (see DESIGN.md)."""
