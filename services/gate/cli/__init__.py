"""gatectl, the release gate's command-line client (SPEC §5.5): commands, rendering, exits."""
