"""The run-time checker the suite installs on the package (conftest.py): beartype with the numeric tower
(an int is a valid float, as in PEP 484), driven by jaxtyping so shape letters must agree within a call."""

from beartype import BeartypeConf, beartype

checker = beartype(conf=BeartypeConf(is_pep484_tower=True))
