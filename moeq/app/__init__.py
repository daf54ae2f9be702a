"""moeq's shells: the `moeq` CLI and the Gradio web workbench (never imports torch itself)."""
