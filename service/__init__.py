"""The glue between the addons and the pure packages: routes, completions, media and accounts."""
