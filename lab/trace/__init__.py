"""Training tools: `lab trace` (a packet's path from live kernel state), `lab capture`, captures along a path."""
