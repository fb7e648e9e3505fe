"""The glue between the addons and the pure packages: routes, completions, the bridge."""
