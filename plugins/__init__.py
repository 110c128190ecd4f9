"""rladder.plugins: every concrete component, one module per family, each registered through the
entry-point group ``rladder`` exactly like a third-party plugin."""
