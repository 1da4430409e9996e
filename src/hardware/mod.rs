//! Hardware detection: CPU, memory, GPUs, and the matching archetype from hardware/.
