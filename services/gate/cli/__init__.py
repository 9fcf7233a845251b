"""gatectl, the release gate's CLI (docs/SPEC.md §5.5): commands, rendering, exits."""
