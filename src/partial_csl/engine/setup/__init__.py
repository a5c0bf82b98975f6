"""Turning a run's settings into what it needs: the --dataset formats, the label space and loaders, the --arch
registry, class re-balancing, the training objects."""
