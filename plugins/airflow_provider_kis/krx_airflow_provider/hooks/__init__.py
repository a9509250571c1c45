"""Hooks of the krx-rl-trader provider."""
