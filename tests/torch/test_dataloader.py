"""FORMAT-001 guard at the brief's PyTorch entry points (brief §4.2)."""

from __future__ import annotations

import numpy as np
import pytest

from ptycho_torch.dataloader import _get_diffraction_stack, npz_headers


def _save(path, diffraction, n_coords, key="diffraction"):
    np.savez(
        path,
        **{key: diffraction},
        probeGuess=np.ones(diffraction.shape[1:] if diffraction.shape[1] == diffraction.shape[2] else diffraction.shape[:2], np.complex64),
        xcoords=np.arange(n_coords, dtype=float),
        ycoords=np.arange(n_coords, dtype=float),
    )
    return path


class TestDataloaderFormatAutoTranspose:
    def test_legacy_hwn_is_transposed(self, tmp_path):
        stack = np.random.default_rng(0).random((64, 64, 100)).astype(np.float32)
        path = _save(tmp_path / "legacy.npz", stack, 100)
        out = _get_diffraction_stack(path)
        assert out.shape == (100, 64, 64)
        np.testing.assert_array_equal(out[17], stack[:, :, 17])

    def test_canonical_is_kept(self, tmp_path):
        stack = np.random.default_rng(1).random((100, 64, 64)).astype(np.float32)
        out = _get_diffraction_stack(_save(tmp_path / "canon.npz", stack, 100))
        np.testing.assert_array_equal(out, stack)

    def test_ambiguous_is_left_alone(self, tmp_path):
        stack = np.random.default_rng(2).random((65, 64, 64)).astype(np.float32)
        out = _get_diffraction_stack(_save(tmp_path / "amb.npz", stack, 65))
        assert out.shape == (65, 64, 64)
        np.testing.assert_array_equal(out, stack)

    def test_legacy_diff3d_key(self, tmp_path):
        stack = np.random.default_rng(3).random((64, 64, 30)).astype(np.float32)
        out = _get_diffraction_stack(_save(tmp_path / "d3.npz", stack, 30, key="diff3d"))
        assert out.shape == (30, 64, 64)

    def test_run1084_shape_is_indexable_after_transpose(self, tmp_path):
        stack = np.zeros((64, 64, 1087), np.float32)
        for i in (0, 367, 722, 1086):
            stack[:, :, i] = i
        path = _save(tmp_path / "run1084.npz", stack, 1087)
        assert npz_headers(path)["diffraction"][0] == (64, 64, 1087)
        out = _get_diffraction_stack(path)
        assert out.shape == (1087, 64, 64)
        for i in (0, 367, 722, 1086):
            assert np.all(out[i] == i)  # would be an IndexError / wrong frame without the guard

    def test_missing_key_names_file(self, tmp_path):
        path = tmp_path / "nokey.npz"
        np.savez(path, xcoords=np.arange(3.0))
        with pytest.raises(ValueError, match="nokey.npz: key 'diffraction'"):
            _get_diffraction_stack(path)


class TestGroupedDiffractionDataset:
    def _grouped(self, tiny_npz, gridsize):
        from ptycho import params
        from ptycho.config.config import ModelConfig, update_legacy_dict
        from ptycho.raw_data import RawData, generate_grouped_data

        update_legacy_dict(params.cfg, ModelConfig(N=32, gridsize=gridsize))
        return generate_grouped_data(RawData.from_file(tiny_npz), n_groups=20, seed=1)

    def test_items_and_batches_carry_x_and_offsets(self, tiny_npz):
        import torch

        from ptycho_torch.dataloader import GroupedDiffractionDataset, grouped_loader

        grouped = self._grouped(tiny_npz, 2)
        ds = GroupedDiffractionDataset(grouped)
        assert len(ds) == 20
        x, off = ds[3]
        assert x.shape == (4, 32, 32) and x.dtype == torch.float32 and off.shape == (4, 2) and off.dtype == torch.float64
        np.testing.assert_array_equal(x.numpy(), grouped.X[3])
        batches = list(grouped_loader(grouped, batch_size=8, shuffle=False))
        assert [b[0].shape[0] for b in batches] == [8, 8, 4]  # the last partial batch is kept
        np.testing.assert_array_equal(torch.cat([b[1] for b in batches]).numpy(), grouped.offsets)

    def test_shuffling_is_seeded(self, tiny_npz):
        import torch

        from ptycho_torch.dataloader import grouped_loader

        grouped = self._grouped(tiny_npz, 1)

        def order(seed):
            return torch.cat([b[0][:, 0, 16, 16] for b in grouped_loader(grouped, 4, shuffle=True, seed=seed)])

        assert torch.equal(order(5), order(5))
        assert not torch.equal(order(5), order(6))
        assert sorted(order(5).tolist()) == sorted(grouped.X[:, 0, 16, 16].tolist())  # a permutation
