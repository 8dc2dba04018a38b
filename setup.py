from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="torchao-gemlite",
    version="0.1.0",
    description="Fast low-bit (8/4/2/1-bit) linear layers for PyTorch through TorchAO, with Triton kernels",
    long_description=Path(__file__).with_name("README.md").read_text(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["torchao_gemlite", "torchao_gemlite.*"]),
    package_data={"torchao_gemlite": ["kernels/tuned/*.json"]},
    python_requires=">=3.10",
    install_requires=[
        "torch>=2.11",
        "torchao>=0.18",
        "triton>=3.6; platform_system == 'Linux'",
    ],
    extras_require={
        "test": [
            "pytest>=8",
            "expecttest",
            "hypothesis",
            "numpy",
            "safetensors",
            "transformers>=5",
            "matplotlib",
        ],
        "bench": ["matplotlib"],
    },
    entry_points={"console_scripts": ["torchao-gemlite-bench=torchao_gemlite.bench.cli:main"]},
)
