"""Single writer per log: group commit, leaf indexes, tiles, checkpoint signing."""
