"""axcnn: CNNs on approximate hardware multipliers given as lookup tables.

Importing the package is light: it does not import optional dependencies and never
initialises CUDA. The main entry points:

- :mod:`axcnn.lut` -- ``MultiplierLUT``, ``load_lut``, metrics, built-in multiplier families
- :mod:`axcnn.quant` -- observers and quantization primitives
- :mod:`axcnn.ops` -- ``approx_matmul``, ``approx_conv2d``, ``approx_linear`` and their backends
- :mod:`axcnn.nn` -- ``ApproxConv2d``, ``ApproxLinear``, ``Mode``, ``GradRule``, ``convert_``
- :mod:`axcnn.models`, :mod:`axcnn.data`, :mod:`axcnn.train`
"""

__version__ = "0.1.0"
