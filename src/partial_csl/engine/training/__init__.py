"""The training loop and what a run is made of: its folder, records, stages, the end of a run."""
