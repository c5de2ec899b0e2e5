"""GPU helpers of the ``triton`` and ``decomposed`` backends.

``factor`` (pure numpy, no GPU needed): exact integer factorisations of LUTs into int8 GEMM
terms. ``kernels`` (imports Triton): the Triton kernels; import it only where Triton exists.
"""
