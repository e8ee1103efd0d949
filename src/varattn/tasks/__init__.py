"""Tasks: what the one trainer needs to know about a kind of data and model (translation, VQA), and the
registry that names them (:data:`varattn.tasks.base.TASKS`)."""

from varattn.tasks.base import TASKS, Task, get_task, task_for, task_name

__all__ = ["TASKS", "Task", "get_task", "task_for", "task_name"]
