"""The science: what the paper's equations say, free of files, configs and schedulers.

- :mod:`~diffmem.science.netconfig`: net settings without torch (defaults, validation, normalization);
- :mod:`~diffmem.science.nets`: the DDPM++ / NCSN++ U-Nets with the paper's ablation knobs;
- :mod:`~diffmem.science.diffusion`: VP / VE / EDM preconditioning and their training losses;
- :mod:`~diffmem.science.augment`: EDM's non-leaking augmentation with augmentation labels;
- :mod:`~diffmem.science.activations`: bytes a net saves for backward per training image, counted from it;
- :mod:`~diffmem.science.precision`: fp32 / bf16 / fp16 arithmetic of the net;
- :mod:`~diffmem.science.schedule`: a run's length, snapshot steps, learning rate and EMA in steps;
- :mod:`~diffmem.science.sampler`: the EDM Heun sampler, seeded generation, the closed-form optimum, grids;
- :mod:`~diffmem.science.memorization`: nearest training images and the d1/d2 memorization ratio;
- :mod:`~diffmem.science.convergence`: whether a run's ratio has levelled off over its snapshots;
- :mod:`~diffmem.science.emm`: the EMM search policy (which sizes to train next; the bracket).

Imports only :mod:`diffmem.errors` and :mod:`diffmem.io` from the rest of the package.
"""
