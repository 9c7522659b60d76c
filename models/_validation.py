"""One place to turn a list of config problems into one error, as every config does."""


def raise_if_problems(config_name: str, problems: list[str]) -> None:
    """Raise one ValueError naming every bad field, so a user fixes them all in one go."""
    if problems:
        raise ValueError(f"invalid {config_name}: " + "; ".join(problems))
