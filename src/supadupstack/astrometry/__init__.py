"""Stage package: astrometry (see DESIGN.md)."""
