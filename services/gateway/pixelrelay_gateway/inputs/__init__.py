"""Input images: fetched safely, checked, scrubbed, and stored beside their task."""
