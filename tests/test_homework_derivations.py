"""The two backward passes derived in the homework (docs/HOMEWORK.md, "Backpropagation part"),
settled by finite differences against fastconv's kernels."""
import numpy as np

from fastconv.functional._activation import (sigmoid_backward, sigmoid_forward,
                                             softmax_backward, softmax_forward)
from tests.gradcheck import numerical_gradient, relative_error


def _jacobian(f, x, eps=1e-6):
    """J[i, j] = d f(x)_i / d x_j by central differences."""
    cols = []
    for j in range(x.size):
        e = np.zeros_like(x)
        e[j] = eps
        cols.append((f(x + e) - f(x - e)) / (2 * eps))
    return np.stack(cols, axis=1)


def test_homework_sigmoid_backward_is_grad_times_out_times_one_minus_out(rng):
    """Homework: "sigmoid: x_out = 1 / (1 + exp(-x_in)), so
    dE/dx_in = dE/dx_out * x_out * (1 - x_out)."

    sigmoid_backward(x_out, dE/dx_out) must equal that formula, and it must match central
    differences of E(x_in) = <sigmoid(x_in), dE/dx_out>.
    """
    x_in = rng.standard_normal((3, 7))
    x_out = sigmoid_forward(x_in)
    np.testing.assert_allclose(x_out, 1 / (1 + np.exp(-x_in)), rtol=1e-14)
    dE_dout = rng.standard_normal(x_in.shape)

    dE_din = sigmoid_backward(x_out, dE_dout)
    np.testing.assert_allclose(dE_din, dE_dout * x_out * (1 - x_out), rtol=1e-14)

    numeric = numerical_gradient(lambda z: float(np.sum(sigmoid_forward(z) * dE_dout)), x_in)
    assert relative_error(dE_din, numeric) < 1e-8


def test_homework_softmax_jacobian_sign_with_exp_minus_b_x(rng):
    """Homework: "softmax with inverse temperature beta in the convention
    x_out_i = exp(-beta x_i) / sum_k exp(-beta x_k). The homework writes the diagonal of the
    Jacobian as +beta out_i (1 - out_i); differentiating carefully gives -beta out_i (1 - out_i)
    for i = j and +beta out_i out_j for i != j, i.e.
    d out_i / d x_j = -beta out_i (delta_ij - out_j). A finite-difference check settles it."

    fastconv's softmax_forward(x, beta) uses exp(+beta x), so the homework's convention with
    temperature b is softmax_forward(x, beta=-b). The finite-difference Jacobian agrees with
    -b y_i (delta_ij - y_j), its diagonal has the sign of -b (so the homework's
    +b y_i (1 - y_i) is wrong), and softmax_backward(y, g, beta=-b) is exactly J^T g.
    """
    b = 1.7
    x = rng.standard_normal(6)
    out = np.exp(-b * x) / np.sum(np.exp(-b * x))
    y = softmax_forward(x, beta=-b)
    np.testing.assert_allclose(y, out, rtol=1e-14)

    jac = _jacobian(lambda z: softmax_forward(z, beta=-b), x)
    careful = -b * (np.diag(y) - np.outer(y, y))        # -b y_i (delta_ij - y_j)
    assert relative_error(jac, careful) < 1e-8

    homework_diagonal = b * y * (1 - y)
    assert np.all(np.diag(jac) < 0) and np.all(homework_diagonal > 0)
    np.testing.assert_allclose(np.diag(jac), -homework_diagonal, rtol=1e-7)
    assert relative_error(np.diag(jac), homework_diagonal) > 1.0
    off = ~np.eye(x.size, dtype=bool)
    np.testing.assert_allclose(jac[off], (b * np.outer(y, y))[off], rtol=1e-7)

    g = rng.standard_normal(x.size)
    assert relative_error(softmax_backward(y, g, beta=-b), jac.T @ g) < 1e-8
