import pytest
import torch
import torch.nn.functional as F

from dass_edge.models import build_model, model_spec, remap
from dass_edge.predictor.embeddings import channel_projection, embed, embed_aligned
from dass_edge.space import SearchSpace

pytestmark = pytest.mark.usefixtures("one_thread")


def _teacher(resolution: int):
    torch.manual_seed(0)
    return build_model(model_spec("resnet_edge_s", num_classes=10, resolution=resolution)).eval()


def test_the_teacher_aligned_embedding_of_the_teacher_is_its_usual_embedding():
    teacher = _teacher(32)  # stage-4 maps 4x4: nothing to pool, same projection (the teacher's width)
    probe = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    width = teacher.spec.widths[-1]
    assert torch.allclose(embed_aligned(teacher, probe, width), embed(teacher, probe), atol=1e-6)


def test_a_narrow_student_is_zero_padded_into_the_teachers_basis_and_never_upsampled():
    teacher = _teacher(16)  # stage-4 maps 2x2
    space = SearchSpace(teacher.spec, fixed_last_stage=False)
    arch = min(space.sample_many(50, seed=3), key=lambda a: a.widths[-1][-1])
    student = remap(teacher, arch, "first").eval()
    probe = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    width = teacher.spec.widths[-1]
    feats = student.forward_features(probe).detach()
    assert feats.shape[1] < width and feats.shape[-1] == 2
    padded = F.pad(feats, (0, 0, 0, 0, 0, width - feats.shape[1]))
    want = torch.einsum("kc,bchw->bkhw", channel_projection(width, 32), padded)
    got = embed_aligned(student, probe, width)
    assert got.shape == (2, 32, 2, 2)
    assert torch.allclose(got, want, atol=1e-5)
    with pytest.raises(ValueError, match="does not fit"):
        embed_aligned(teacher, probe, feats.shape[1])
