"""rladder-toy: an example third-party plugin providing one encoder cell."""
