"""Order statistics for numba kernels: one quickselect and one small sort every kernel shares."""

from __future__ import annotations

from numba import njit


@njit(cache=True)
def select_kth(a, n, k):
    """Partially order a[:n] so that a[k] is its k-th smallest value (quickselect); returns it.

    Median-of-three pivots; O(n) on average, no allocation and no full sort: a median or a MAD
    of a few hundred samples costs a third of ``np.median``.
    """
    lo = 0
    hi = n - 1
    while hi > lo:
        mid = (lo + hi) >> 1
        if a[mid] < a[lo]:
            a[mid], a[lo] = a[lo], a[mid]
        if a[hi] < a[lo]:
            a[hi], a[lo] = a[lo], a[hi]
        if a[hi] < a[mid]:
            a[hi], a[mid] = a[mid], a[hi]
        pivot = a[mid]
        i = lo
        j = hi
        while i <= j:
            while a[i] < pivot:
                i += 1
            while a[j] > pivot:
                j -= 1
            if i <= j:
                a[i], a[j] = a[j], a[i]
                i += 1
                j -= 1
        if k <= j:
            hi = j
        elif k >= i:
            lo = i
        else:
            break
    return a[k]


@njit(cache=True, inline="always")
def insertion_sort(a, n):
    """Sort a[:n] in place (n is small: the number of frames of a pixel)."""
    for i in range(1, n):
        v = a[i]
        j = i - 1
        while j >= 0 and a[j] > v:
            a[j + 1] = a[j]
            j -= 1
        a[j + 1] = v
