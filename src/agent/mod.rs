//! `taskscope run`: the agent.

pub mod stacks;
