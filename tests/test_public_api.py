"""The public surface is pinned: adding or removing a name is a deliberate change."""

import liveshelf
from liveshelf.errors import ConfigError, LiveshelfError, NotFittedError, NotFoundError, check_param


def test_exported_members():
    assert sorted(liveshelf.__all__) == sorted(
        [
            "ConfigError",
            "DataFormatError",
            "Event",
            "EventType",
            "Host",
            "Item",
            "LiveshelfError",
            "NotFittedError",
            "NotFoundError",
            "RegistryError",
            "Room",
            "ShelfSlot",
            "User",
            "ValidationError",
            "__version__",
        ]
    )
    for name in liveshelf.__all__:
        assert hasattr(liveshelf, name)


def test_error_tree_inherits_builtins():
    assert issubclass(ConfigError, ValueError) and issubclass(ConfigError, LiveshelfError)
    assert issubclass(NotFittedError, AttributeError)
    assert str(NotFoundError("user 'u1' is unknown")) == "user 'u1' is unknown"


def test_check_param_message_names_parameter_value_and_expectation():
    import pytest

    with pytest.raises(
        ConfigError, match=r"The 'k' parameter of feed must be an int in \[1, 500\]. Got 0 instead."
    ):
        check_param("k", 0, False, "an int in [1, 500]", "feed")
    check_param("k", 5, True, "an int in [1, 500]", "feed")
