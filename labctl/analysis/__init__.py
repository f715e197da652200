"""Reading runs back for people: statistics (noise model, comparison), reports, summaries."""
