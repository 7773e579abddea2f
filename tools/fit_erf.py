#!/usr/bin/env python3
"""Fits the two polynomial pieces of NanoSparse.Kernels.Erf (least squares on Chebyshev nodes, in double),
then reports the max abs error of the float32 Horner evaluation against scipy's erf.
  |x| <= 1:        erf(x)  = x * P(x^2)
  1 < |x| <= 3.93: erfc(x) = exp(-x^2) * Q(1/x)
and the one-piece form GELU uses for the normal CDF (Kernels/Gelu.cs):
  u >= 0:          erfc(u) = exp(-u^2) * R(z),  z = 1 / (1 + u/2),   R of degree 9 (erfcx(u) = erfc(u)·exp(u²))
Run: env -u OPENBLAS_CORETYPE /usr/bin/python3 tools/fit_erf.py
"""
import numpy as np
from scipy.special import erf, erfc


def horner(coeffs, t):
    r = np.float32(coeffs[-1])
    for c in coeffs[-2::-1]:
        r = (r * t + np.float32(c)).astype(np.float32)
    return r


def fit_small(deg=6, a=1.0):
    t = np.cos(np.linspace(0, np.pi, 4000)) * 0.5 * a * a + 0.5 * a * a
    xs = np.sqrt(t)
    xs = xs[xs > 1e-6]
    c = np.polynomial.chebyshev.chebfit(xs ** 2 * 2 / (a * a) - 1, erf(xs) / xs, deg)
    p = np.polynomial.Polynomial(np.polynomial.chebyshev.cheb2poly(c))(np.polynomial.Polynomial([-1, 2 / (a * a)]))
    co = p.coef.astype(np.float32)
    xf = np.linspace(0, a, 20001).astype(np.float32)
    r = (horner(co, (xf * xf).astype(np.float32)) * xf).astype(np.float32)
    return co, np.max(np.abs(r.astype(np.float64) - erf(xf.astype(np.float64))))


def fit_large(deg=8, a=1.0, b=3.93):
    xs = 0.5 * (a + b) + 0.5 * (b - a) * np.cos(np.linspace(0, np.pi, 4000))
    sa, sb = 1 / b, 1 / a
    c = np.polynomial.chebyshev.chebfit((1 / xs - sa) * 2 / (sb - sa) - 1, erfc(xs) * np.exp(xs * xs), deg)
    p = np.polynomial.Polynomial(np.polynomial.chebyshev.cheb2poly(c))(
        np.polynomial.Polynomial([-1 - 2 * sa / (sb - sa), 2 / (sb - sa)]))
    co = p.coef.astype(np.float32)
    xf = np.linspace(a, b, 20001).astype(np.float32)
    q = horner(co, (np.float32(1) / xf).astype(np.float32))
    v = (np.float32(1) - q * np.exp(-(xf.astype(np.float64)) ** 2).astype(np.float32)).astype(np.float32)
    return co, np.max(np.abs(v.astype(np.float64) - erf(xf.astype(np.float64))))


def fit_erfcx(deg=9, p=0.5, umax=6.0):
    from scipy.special import erfcx
    zmin = 1 / (1 + p * umax)
    zs = 0.5 * (1 + zmin) + 0.5 * (1 - zmin) * np.cos(np.linspace(0, np.pi, 6000))
    us = (1 / zs - 1) / p
    c = np.polynomial.chebyshev.chebfit((zs - zmin) * 2 / (1 - zmin) - 1, erfcx(us), deg)
    poly = np.polynomial.Polynomial(np.polynomial.chebyshev.cheb2poly(c))(
        np.polynomial.Polynomial([-1 - 2 * zmin / (1 - zmin), 2 / (1 - zmin)]))
    co = poly.coef.astype(np.float32)
    # error reported for the normal CDF it serves: Phi(x) = 1 - erfc(u)/2 (x >= 0) or erfc(u)/2, u = |x|/sqrt 2
    xf = np.linspace(-9, 9, 40001).astype(np.float32)
    u = (np.abs(xf) * np.float32(0.70710678)).astype(np.float32)
    z = (np.float32(1) / (np.float32(1) + np.float32(p) * u)).astype(np.float32)
    h = (np.float32(0.5) * np.exp(-(u.astype(np.float64)) ** 2).astype(np.float32) * horner(co, z)).astype(np.float32)
    cdf = np.where(xf >= 0, np.float32(1) - h, h)
    return co, np.max(np.abs(cdf - 0.5 * erfc(-xf.astype(np.float64) / np.sqrt(2))))


if __name__ == "__main__":
    for name, (co, err) in (("P", fit_small()), ("Q", fit_large()), ("R", fit_erfcx())):
        print(name, "max abs error %.3g" % err)
        print("  " + ", ".join("%s%d = %.17gf" % (name, i, c) for i, c in enumerate(co)))
