"""`perceptions serve`: a local web app to score photos, browse the map and collect Place Pulse-style votes."""
