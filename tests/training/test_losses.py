"""The mapping stage's image-space gradient loss."""
import torch
import torch.nn.functional as F

from training.losses import gradient_l1


def test_gradient_l1_zero_for_equal_and_shift_invariant():
    x = torch.rand(2, 3, 16, 16)
    assert float(gradient_l1(x, x)) == 0.0
    # a constant tone offset has the same gradients: the pixel L1's job, not this one's
    assert float(gradient_l1(x + 0.2, x)) < 1e-6


def test_gradient_l1_charges_a_blur():
    x = torch.rand(1, 1, 32, 32)
    blurred = F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
    sharp_noise = x + 0.01 * torch.randn_like(x)
    assert float(gradient_l1(blurred, x)) > 5 * float(gradient_l1(sharp_noise, x))



def test_masked_l1_counts_only_the_defect_pixels():
    from training.losses import masked_l1
    y = torch.zeros(2, 3, 8, 8)
    fake = y.clone()
    fake[:, :, :4] = 1.0                      # wrong outside the mask only
    mask = torch.zeros(2, 1, 8, 8)
    mask[:, :, 6:] = 1
    assert float(masked_l1(fake, y, mask)) == 0.0
    fake[:, :, 6:] = 0.5                      # now wrong on the mask: its mean error, not diluted
    assert abs(float(masked_l1(fake, y, mask)) - 0.5) < 1e-6
    assert float(masked_l1(fake, y, torch.zeros_like(mask))) == 0.0
