"""Client-side defenses applied to an update before it is sent."""
