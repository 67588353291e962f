# Unit tracing for the scaling model (bench/scaling.py): every parallel region of the kernels
# reports each of its units' wall time here while a trace is on, and nothing otherwise.
#
#   cdef double t0 = unit_begin()          # 0 when no trace is on: one load and a branch
#   ... the unit's work ...
#   unit_end(b"conv2d_forward", u, n_units, t0)
#
# n_units is the region's unit count, fixed by the shapes. A region whose work is cut by the
# thread count instead (pure copies and elementwise updates, where the cut cannot change a
# bit) reports itself once, as unit 0 of n_units = 0: "divisible among any threads".

cdef double unit_begin() noexcept nogil
cdef void unit_end(const char* region, int unit, int n_units, double t0) noexcept nogil

# Whether a trace is on. A kernel that runs serially on one thread takes its parallel path
# (on one thread) while a trace is on, so that a one-thread trace still sees every unit.
cdef bint trace_active() noexcept nogil
