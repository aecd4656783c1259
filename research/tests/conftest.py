"""The package's test fixtures (tiny teachers, real MiniLM), for the studies' tests."""

from tests.conftest import _tiny_student, minilm, queries, tiny_student, tiny_teacher  # noqa: F401
