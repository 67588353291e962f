# Shared fused type of every kernel: one compiled specialisation per dtype.
ctypedef fused real_t:
    float
    double
