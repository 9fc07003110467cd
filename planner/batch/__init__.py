"""Batch composition under KV growth: which requests a decode replica runs together, in which
order, so that its KV cache (growing by one token per step) never overflows. Every method keeps a
placement (``placement=`` a placement method, default greedy) and fills ``Plan.order`` with one
list per decode replica (key ``"cluster#k"``), which :func:`planner.simulate.simulate` follows."""
