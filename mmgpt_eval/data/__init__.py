"""Readers and embedded data sets: files and generators -> :class:`~mmgpt_eval.data.sample.Sample` lists.
Task plugins reach them through ``mmgpt_eval.taskapi.datasets``.

Importing the package registers the image-key schemes of the generated images (``easyvqa``,
``counting``, ``blank``) with ``mmgpt_eval.images``, so a report can re-open them from a samples log."""

from . import counting_images, dialog_spec, easyvqa  # noqa: F401 - each registers its image-key scheme
