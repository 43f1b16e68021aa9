"""diffmem: the science behind the reproduction of 'On Memorization in Diffusion Models'.

Modules: data (sources, subsets), nets (DDPM++/NCSN++ U-Nets), diffusion (VP/VE/EDM
preconditioning and losses), train, sample (EDM Heun sampler, optimal denoiser),
memorization (kNN ratio), emm (search policy), config (runs from YAML), plotting, io.
"""

__version__ = "0.1.0"
