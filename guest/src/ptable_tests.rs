//! Host tests of ptable.rs.

use super::*;

fn table_with(states: &[ProcState]) -> ProcTable<()> {
    let mut t = ProcTable::new();
    for (i, &s) in states.iter().enumerate() {
        t.procs[i].state = s;
        t.procs[i].pid = i as i32 + 1;
    }
    t
}

#[test]
fn alloc_slot_gives_fresh_pids_and_fills_the_table() {
    let mut t: ProcTable<()> = ProcTable::new();
    assert_eq!(t.alloc_slot(), Some(0));
    assert_eq!(t.alloc_slot(), Some(1));
    assert_eq!(t.procs[0].pid, 1);
    assert_eq!(t.procs[1].pid, 2);
    assert_eq!(t.procs[1].state, ProcState::Embryo);
    let (kstack, pgdir) = t.clear_slot(0);
    assert_eq!((kstack, pgdir), (0, None));
    assert_eq!(t.alloc_slot(), Some(0));
    assert_eq!(t.procs[0].pid, 3, "pids are never reused");
    for _ in 2..NPROC {
        assert!(t.alloc_slot().is_some());
    }
    assert_eq!(t.alloc_slot(), None);
}

#[test]
fn clear_slot_hands_back_memory() {
    let mut t: ProcTable<u32> = ProcTable::new();
    let i = t.alloc_slot().unwrap();
    t.procs[i].kstack = 0x8030_0000;
    t.procs[i].pgdir = Some(7);
    t.procs[i].killed = Some(137);
    assert_eq!(t.clear_slot(i), (0x8030_0000, Some(7)));
    assert_eq!(t.procs[i].state, ProcState::Unused);
    assert_eq!(t.procs[i].killed, None);
}

#[test]
fn wakeup_only_matching_sleepers() {
    use ProcState::*;
    let mut t = table_with(&[Sleeping, Sleeping, Runnable, Sleeping]);
    t.procs[0].chan = Some(Chan::Ticks);
    t.procs[1].chan = Some(Chan::Proc(2));
    t.procs[3].chan = Some(Chan::Ticks);
    assert_eq!(t.wakeup(Chan::Ticks), 2);
    assert_eq!(t.procs[0].state, Runnable);
    assert_eq!(t.procs[1].state, Sleeping);
    assert_eq!(t.procs[3].state, Runnable);
    assert_eq!(t.wakeup(Chan::Proc(1)), 0);
    assert_eq!(t.wakeup(Chan::Proc(2)), 1);
}

#[test]
fn reparent_and_zombie_children() {
    use ProcState::*;
    let mut t = table_with(&[Running, Running, Zombie, Runnable, Unused]);
    t.procs[1].parent = Some(0);
    t.procs[2].parent = Some(1);
    t.procs[3].parent = Some(1);
    assert_eq!(t.zombie_child(1), (true, Some(2)));
    assert_eq!(t.zombie_child(3), (false, None));
    assert_eq!(t.zombie_child(0), (true, None));
    assert!(t.reparent(1, 0), "a zombie moved: init must be woken");
    assert_eq!(t.procs[2].parent, Some(0));
    assert_eq!(t.procs[3].parent, Some(0));
    assert_eq!(t.zombie_child(1), (false, None));
    assert_eq!(t.zombie_child(0).1, Some(2));
    assert!(!t.reparent(3, 0));
}

#[test]
fn kill_marks_and_wakes() {
    use ProcState::*;
    let mut t = table_with(&[Running, Sleeping, Zombie]);
    assert!(t.kill(2, KILLED_STATUS));
    assert_eq!(t.procs[1].state, Runnable);
    assert_eq!(t.procs[1].killed, Some(137));
    assert!(t.kill(1, KILLED_STATUS));
    assert_eq!(t.procs[0].state, Running);
    assert!(!t.kill(3, KILLED_STATUS), "zombies are already dead");
    assert!(!t.kill(99, KILLED_STATUS));
    assert!(!t.kill(0, KILLED_STATUS), "pid 0 matches no unused slot");
}

#[test]
fn round_robin() {
    use ProcState::*;
    let mut t = table_with(&[Runnable, Sleeping, Runnable, Runnable]);
    assert_eq!(t.next_runnable(NPROC - 1), Some(0));
    assert_eq!(t.next_runnable(0), Some(2));
    assert_eq!(t.next_runnable(2), Some(3));
    assert_eq!(t.next_runnable(3), Some(0));
    t.procs[0].state = Running;
    assert_eq!(t.next_runnable(3), Some(2));
    let empty: ProcTable<()> = ProcTable::new();
    assert_eq!(empty.next_runnable(5), None);
}

#[test]
fn names_are_the_last_path_component() {
    assert_eq!(basename(b"/echo"), b"echo");
    assert_eq!(basename(b"echo"), b"echo");
    assert_eq!(basename(b"a/b/c"), b"c");
    let mut p: Proc<()> = Proc::new();
    p.set_name(b"/bin/usertests");
    assert_eq!(p.name(), "usertests");
    p.set_name(b"averyveryverylongprogramname");
    assert_eq!(p.name(), "averyveryverylo");
}
