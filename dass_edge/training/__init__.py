"""Training: the supervised loop, the teacher recipe, KD losses, distillation, the teacher-output cache and
the ``dass-edge distill`` run folder.

Modules, from the bottom up: :mod:`~dass_edge.training.loop` (the seeded, resumable loop shared by teachers
and students), :mod:`~dass_edge.training.teacher` (train and load teachers),
:mod:`~dass_edge.training.losses` (KD losses registered by key), :mod:`~dass_edge.training.teacher_cache`
(the teacher's logits computed once), :mod:`~dass_edge.training.distill` (a student remapped from its
teacher and KD-trained) and :mod:`~dass_edge.training.distill_run` (targets and the files a run writes).
Nothing is imported here, so importing one module does not pull in the others.
"""
