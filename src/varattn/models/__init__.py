"""The architectures. Importing this package registers the built-in ones' config sections
(:func:`varattn.config.register_section`), which :func:`varattn.config.sections` relies on."""

from varattn.models import transformer, vqa  # noqa: F401  (each registers its section)
