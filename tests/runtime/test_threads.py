"""One thread setting bounds torch's intra-op pool and FAISS's OpenMP pool alike."""

from __future__ import annotations

import faiss
import torch

from services.runtime.server import bound_threads


def test_faiss_and_torch_follow_the_thread_setting_and_zero_keeps_torchs_count():
    torch_before, faiss_before = torch.get_num_threads(), faiss.omp_get_max_threads()
    try:
        bound_threads(1)
        assert (torch.get_num_threads(), faiss.omp_get_max_threads()) == (1, 1)
        # FAISS first: where torch and FAISS share one OpenMP runtime (after torch has run parallel work in
        # this process, e.g. an earlier test), setting FAISS's count also sets torch's, so the other order
        # would leave torch at 7 whenever this test runs after such a test.
        faiss.omp_set_num_threads(7)
        torch.set_num_threads(2)
        bound_threads(0)  # unset: torch keeps its count and FAISS is bounded by it
        assert (torch.get_num_threads(), faiss.omp_get_max_threads()) == (2, 2)
    finally:
        torch.set_num_threads(torch_before)
        faiss.omp_set_num_threads(faiss_before)
