//! `--pgdump-svg`: the address spaces the guest asked to see, drawn as one SVG file with a
//! panel per dump, in the manner of the xv6 book's figures of chapter 2.
//!
//! Each panel has a virtual strip (0 at the bottom, 4 GiB at the top) with the regions the
//! walk found, a physical strip with the machine's landmarks (0, EXTMEM, the kernel,
//! PHYSTOP, the end of RAM, the MMIO hole at DEVSPACE), and a band for every run of the dump
//! from its virtual pages to its physical frames. Regions are named from the PTE flags and
//! exec's layout: below KERNBASE, the page without PTE_U is the guard page, the page above it
//! the stack, what lies above that the heap, and below the guard page read-only pages are
//! text and writable ones data/bss; above KERNBASE, the kmap rows and the boot-module row.
//!
//! Sizes span 4 KiB to hundreds of MiB, so the strips use a piecewise log scale: every
//! region is a box whose height grows by [`PER_DOUBLING`] px for each doubling of its size,
//! addresses are linear inside a box, and unmapped stretches are drawn as short broken
//! (dashed) boxes. Labels sit in columns beside the strips, pushed apart so none overlap,
//! with a leader line to their box.
//!
//! The picture is drawn from the dumps' text (`pgdump::parse_dumps`), so a run in the lab,
//! where only text comes back, draws the same file. Elements carry `data-*` attributes (the
//! region's kind, range, pages and flags; each band's run in the `--pgdump` format) so tests
//! and scripts can read the picture back.

use std::fmt::Write as _;

use svg::node::element::{Group, Line, Polygon, Polyline, Rectangle, Text, Title};
use svg::Document;

use crate::arch::layout::{DEVSPACE, EXTMEM, KERNBASE};
use crate::debug::pgdump::{format_run, Dump, Run};

const PGSIZE: u64 = xv6_abi::mmu::PGSIZE as u64;
const KERNLINK: u64 = KERNBASE + EXTMEM;
const TOP: u64 = 1 << 32;

/// Height of a one-page box.
const MIN_H: f64 = 18.0;
/// Height added per doubling of a box's size.
pub const PER_DOUBLING: f64 = 8.0;
/// Height of a broken (unmapped, no RAM) stretch.
const GAP_H: f64 = 24.0;
/// Height of a label: two lines.
const LABEL_H: f64 = 27.0;
/// The most panels one file holds; later dumps are counted in a note.
pub const MAX_PANELS: usize = 32;
/// The most dump text a run keeps for the picture (what a lab run sends back, line by line).
pub const MAX_TEXT: usize = 1 << 20;
/// Bands drawn per region before its runs are drawn as one band to the hull of its frames.
const MAX_BANDS_PER_REGION: usize = 64;

const WIDTH: f64 = 1240.0;
const V_LABEL_X: f64 = 370.0; // right edge of the virtual labels
const V_X: f64 = 410.0;
const STRIP_W: f64 = 120.0;
const P_X: f64 = 770.0;
const P_LABEL_X: f64 = 930.0; // left edge of the physical labels

/// What the drawing needs to know about the machine besides the dumps.
#[derive(Debug, Clone, Copy)]
pub struct Machine {
    /// The top of the kernel's free memory (`PHYSTOP`).
    pub phystop: u64,
    /// The end of guest RAM.
    pub ram_end: u64,
    /// The physical end of the kernel image (its last segment's end, page-rounded), if known.
    pub kernel_end: Option<u64>,
}

impl Machine {
    /// The machine of a run with `mem` bytes of RAM booting `kernel` (an ELF image; the
    /// kernel's end is left out if it does not parse).
    pub fn new(mem: u64, kernel: &[u8]) -> Machine {
        let phystop = crate::arch::layout::phystop(mem);
        let kernel_end = crate::boot::loader::parse_kernel(kernel, phystop)
            .ok()
            .and_then(|k| k.segments.iter().map(|s| s.paddr + s.memsz).max())
            .map(|e| e.div_ceil(PGSIZE) * PGSIZE);
        Machine {
            phystop,
            ram_end: mem,
            kernel_end,
        }
    }
}

/// A region's kind: what it is called, how it is coloured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Data,
    Guard,
    Stack,
    Heap,
    UserReadOnly,
    UserWritable,
    KmapLow,
    KmapText,
    KmapData,
    BootModules,
    DevSpace,
    Kernel,
}

impl Kind {
    /// The name in `data-kind` and in the legend.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Text => "text",
            Kind::Data => "data/bss",
            Kind::Guard => "guard page",
            Kind::Stack => "stack",
            Kind::Heap => "heap",
            Kind::UserReadOnly => "user, read-only",
            Kind::UserWritable => "user, writable",
            Kind::KmapLow => "kmap: I/O space, low memory",
            Kind::KmapText => "kmap: kernel text, rodata",
            Kind::KmapData => "kmap: kernel data, free memory",
            Kind::BootModules => "boot modules",
            Kind::DevSpace => "kmap: DEVSPACE (devices)",
            Kind::Kernel => "kernel",
        }
    }

    fn short(self) -> &'static str {
        match self {
            Kind::KmapLow => "I/O, low memory",
            Kind::KmapText => "kernel text",
            Kind::KmapData => "kernel data + free",
            Kind::DevSpace => "devices",
            Kind::UserReadOnly => "user r-",
            Kind::UserWritable => "user rw",
            k => k.name(),
        }
    }

    fn colour(self) -> &'static str {
        match self {
            Kind::Text => "#4e79a7",
            Kind::Data => "#59a14f",
            Kind::Guard => "#e15759",
            Kind::Stack => "#f28e2b",
            Kind::Heap => "#b07aa1",
            Kind::UserReadOnly => "#76b7b2",
            Kind::UserWritable => "#8cd17d",
            Kind::KmapLow => "#a0a0a0",
            Kind::KmapText => "#707070",
            Kind::KmapData => "#c8bfb9",
            Kind::BootModules => "#d4a6c8",
            Kind::DevSpace => "#9c755f",
            Kind::Kernel => "#d0d0d0",
        }
    }

    fn is_user_half(self) -> bool {
        matches!(
            self,
            Kind::Text
                | Kind::Data
                | Kind::Guard
                | Kind::Stack
                | Kind::Heap
                | Kind::UserReadOnly
                | Kind::UserWritable
        )
    }
}

/// VA-contiguous pages of one kind.
#[derive(Debug, Clone)]
pub struct Region {
    pub kind: Kind,
    pub first_va: u64,
    /// One past the last byte.
    pub end_va: u64,
    /// The dump's runs, cut where a region ends.
    pub pieces: Vec<Run>,
}

impl Region {
    pub fn pages(&self) -> u64 {
        (self.end_va - self.first_va) / PGSIZE
    }

    /// The flags of its pages (`r-u`, `rwk`, ...), several joined with `/` if they differ.
    pub fn flags(&self) -> String {
        let mut seen: Vec<String> = Vec::new();
        for p in &self.pieces {
            let f = flags(p);
            if !seen.contains(&f) {
                seen.push(f);
            }
        }
        seen.join("/")
    }
}

fn flags(r: &Run) -> String {
    format!(
        "r{}{}",
        if r.writable { 'w' } else { '-' },
        if r.user { 'u' } else { 'k' }
    )
}

fn end_of(r: &Run) -> u64 {
    u64::from(r.last_va) + PGSIZE
}

/// What the page at `va` of run `r` is, given the user half's guard page (if any).
fn kind_of(va: u64, r: &Run, guard: Option<u64>, m: &Machine) -> Kind {
    if va < KERNBASE {
        match guard {
            _ if !r.user => Kind::Guard,
            Some(g) if va < g => {
                if r.writable {
                    Kind::Data
                } else {
                    Kind::Text
                }
            }
            Some(g) if va == g + PGSIZE => Kind::Stack,
            Some(_) => Kind::Heap,
            None if r.writable => Kind::UserWritable,
            None => Kind::UserReadOnly,
        }
    } else if va < KERNBASE + EXTMEM {
        Kind::KmapLow
    } else if va < KERNBASE + m.phystop {
        if r.writable {
            Kind::KmapData
        } else if va == KERNLINK {
            Kind::KmapText
        } else {
            Kind::Kernel
        }
    } else if va < DEVSPACE {
        if r.writable {
            Kind::Kernel
        } else {
            Kind::BootModules
        }
    } else {
        Kind::DevSpace
    }
}

/// The dump's regions, in VA order.
pub fn regions(dump: &Dump, m: &Machine) -> Vec<Region> {
    let user_half: Vec<&Run> = dump
        .runs
        .iter()
        .filter(|r| u64::from(r.first_va) < KERNBASE)
        .collect();
    // The guard page: the highest page of the user half without PTE_U (clearpteu's).
    let guard = user_half
        .iter()
        .filter(|r| !r.user)
        .map(|r| u64::from(r.last_va))
        .max();
    let mut cuts = vec![KERNBASE, KERNBASE + EXTMEM, KERNBASE + m.phystop, DEVSPACE];
    if let Some(g) = guard {
        cuts.extend([g, g + PGSIZE, g + 2 * PGSIZE]);
    }
    let kind_of = |va: u64, r: &Run| kind_of(va, r, guard, m);
    let mut out: Vec<Region> = Vec::new();
    for r in &dump.runs {
        let (mut start, end) = (u64::from(r.first_va), end_of(r));
        while start < end {
            let stop = cuts
                .iter()
                .copied()
                .filter(|&c| c > start && c < end)
                .min()
                .unwrap_or(end);
            let piece = Run {
                first_va: start as u32,
                last_va: (stop - PGSIZE) as u32,
                pa: r.pa.wrapping_add((start - u64::from(r.first_va)) as u32),
                ..*r
            };
            let kind = kind_of(start, r);
            match out.last_mut() {
                Some(g) if g.kind == kind && g.end_va == start => {
                    g.end_va = stop;
                    g.pieces.push(piece);
                }
                _ => out.push(Region {
                    kind,
                    first_va: start,
                    end_va: stop,
                    pieces: vec![piece],
                }),
            }
            start = stop;
        }
    }
    out
}

/// One box of a strip: `[start, end)` of the address space.
#[derive(Debug, Clone)]
struct Segment {
    start: u64,
    end: u64,
    /// Drawn short and dashed: nothing is there.
    broken: bool,
    /// Its place on the strip: bottom and top offsets from the strip's bottom.
    y0: f64,
    y1: f64,
}

/// A piecewise scale over `[0, 4 GiB)`.
struct Axis {
    segs: Vec<Segment>,
}

impl Axis {
    /// `bounds`: (start, end, broken) covering [0, 4 GiB) in order.
    fn new(bounds: &[(u64, u64, bool)]) -> Axis {
        let mut y = 0.0;
        let segs = bounds
            .iter()
            .map(|&(start, end, broken)| {
                let h = if broken {
                    GAP_H
                } else {
                    let pages = ((end - start) as f64 / PGSIZE as f64).max(1.0);
                    MIN_H + PER_DOUBLING * pages.log2()
                };
                let s = Segment {
                    start,
                    end,
                    broken,
                    y0: y,
                    y1: y + h,
                };
                y += h;
                s
            })
            .collect();
        Axis { segs }
    }

    fn height(&self) -> f64 {
        self.segs.last().map_or(0.0, |s| s.y1)
    }

    /// The offset of `addr` from the strip's bottom.
    fn pos(&self, addr: u64) -> f64 {
        for s in &self.segs {
            if addr >= s.start && addr <= s.end {
                let f = (addr - s.start) as f64 / (s.end - s.start) as f64;
                return s.y0 + f * (s.y1 - s.y0);
            }
        }
        self.height()
    }
}

/// Fills the stretches between `ranges` (sorted, disjoint) with broken segments.
fn cover(ranges: &[(u64, u64)]) -> Vec<(u64, u64, bool)> {
    let mut out = Vec::new();
    let mut at = 0;
    for &(s, e) in ranges {
        if s > at {
            out.push((at, s, true));
        }
        out.push((s, e, false));
        at = e;
    }
    if at < TOP {
        out.push((at, TOP, true));
    }
    out
}

/// A box of the physical strip.
#[derive(Debug, Clone)]
struct PhysBox {
    start: u64,
    end: u64,
    name: String,
    fill: &'static str,
}

/// The physical strip's boxes: the landmarks, and the free memory cut around the frames of
/// the user pages (grouped into at most 6 clusters).
fn phys_boxes(regions: &[Region], m: &Machine) -> Vec<PhysBox> {
    let (marks, free_from) = kernel_marks(regions, m);
    let mut out: Vec<PhysBox> = Vec::new();
    for (i, &(s, name, fill)) in marks.iter().enumerate() {
        let e = marks.get(i + 1).map_or(free_from, |n| n.0);
        out.push(PhysBox {
            start: s,
            end: e,
            name: name.into(),
            fill,
        });
    }
    let free = |start, end| PhysBox {
        start,
        end,
        name: "free memory (kalloc)".into(),
        fill: "#f6f6f6",
    };
    let mut at = free_from;
    for (s, e, n) in user_frame_clusters(regions, free_from, m) {
        if s > at {
            out.push(free(at, s));
        }
        out.push(PhysBox {
            start: s,
            end: e,
            name: format!("frames of user pages ({n})"),
            fill: "#fde9c8",
        });
        at = e;
    }
    if m.phystop > at {
        out.push(free(at, m.phystop));
    }
    if m.ram_end > m.phystop {
        out.push(PhysBox {
            start: m.phystop,
            end: m.ram_end,
            name: "boot modules (not in the free list)".into(),
            fill: "#eadcf0",
        });
    }
    out.push(PhysBox {
        start: DEVSPACE,
        end: TOP,
        name: "MMIO hole: IOAPIC, LAPIC".into(),
        fill: "#dccbbd",
    });
    out
}

/// The boxes below free memory (start, name, fill): low memory, then the kernel (its text
/// and its data when the dump shows where the text ends); and where free memory starts.
fn kernel_marks(regions: &[Region], m: &Machine) -> (Vec<(u64, &'static str, &'static str)>, u64) {
    let text_end = regions
        .iter()
        .find(|r| r.kind == Kind::KmapText)
        .map(|r| r.end_va - KERNBASE);
    let mut marks = vec![(0, "low memory, I/O space", "#e4e4e4")];
    let mut free_from = EXTMEM;
    if let Some(t) = text_end.filter(|&t| t > EXTMEM && t < m.phystop) {
        marks.push((EXTMEM, "kernel text, rodata", "#909090"));
        free_from = t;
        if let Some(k) = m.kernel_end.filter(|&k| k > t && k < m.phystop) {
            marks.push((t, "kernel data, bss", "#c8bfb9"));
            free_from = k;
        }
    } else if let Some(k) = m.kernel_end.filter(|&k| k > EXTMEM && k < m.phystop) {
        marks.push((EXTMEM, "kernel", "#909090"));
        free_from = k;
    }
    (marks, free_from)
}

/// The user pages' frames inside free memory (from `free_from` to PHYSTOP), clustered into
/// at most 6 (start, end, frames), the gap that joins two growing until they fit.
fn user_frame_clusters(regions: &[Region], free_from: u64, m: &Machine) -> Vec<(u64, u64, u64)> {
    let mut frames: Vec<(u64, u64)> = regions
        .iter()
        .filter(|r| r.kind.is_user_half())
        .flat_map(|r| &r.pieces)
        .map(|p| {
            let s = u64::from(p.pa);
            (s, s + u64::from(p.pages()) * PGSIZE)
        })
        .filter(|&(s, e)| s >= free_from && e <= m.phystop)
        .collect();
    frames.sort_unstable();
    let mut gap = 64 << 10;
    loop {
        let mut c: Vec<(u64, u64, u64)> = Vec::new(); // start, end, frames
        for &(s, e) in &frames {
            match c.last_mut() {
                Some(l) if s <= l.1 + gap => {
                    l.1 = l.1.max(e);
                    l.2 += (e - s) / PGSIZE;
                }
                _ => c.push((s, e, (e - s) / PGSIZE)),
            }
        }
        if c.len() <= 6 {
            return c;
        }
        gap *= 4;
    }
}

/// The landmark a range starts at, for its label.
fn landmark(addr: u64, virt: bool, m: &Machine) -> Option<&'static str> {
    match (virt, addr) {
        (true, KERNBASE) => Some("KERNBASE"),
        (true, KERNLINK) => Some("KERNLINK"),
        (true, a) if a == KERNBASE + m.phystop => Some("P2V(PHYSTOP)"),
        (_, DEVSPACE) => Some("DEVSPACE"),
        (false, EXTMEM) => Some("EXTMEM"),
        (false, a) if a == m.phystop => Some("PHYSTOP"),
        (false, a) if Some(a) == m.kernel_end => Some("end"),
        _ => None,
    }
}

/// `0x` and 8 hex digits.
fn hex(a: u64) -> String {
    format!("0x{a:08x}")
}

/// A size in KiB, MiB or GiB.
fn size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b => format!("{} KiB", b >> 10),
    }
}

fn num(x: f64) -> String {
    format!("{x:.1}")
}

/// Places labels wanting to be centred at `want` (SVG y, any order) so that none overlap and
/// all stay in `[lo, hi]` when they fit; returns their y (centres), in the input's order.
fn spread(want: &[f64], lo: f64, hi: f64) -> Vec<f64> {
    let mut order: Vec<usize> = (0..want.len()).collect();
    order.sort_by(|&a, &b| want[a].total_cmp(&want[b]));
    let mut y: Vec<f64> = order.iter().map(|&i| want[i]).collect();
    let half = LABEL_H / 2.0;
    for i in 0..y.len() {
        let min = if i == 0 {
            lo + half
        } else {
            y[i - 1] + LABEL_H
        };
        y[i] = y[i].max(min);
    }
    for i in (0..y.len()).rev() {
        let max = if i + 1 == y.len() {
            hi - half
        } else {
            y[i + 1] - LABEL_H
        };
        y[i] = y[i].min(max);
    }
    // If they do not all fit, the downward pass wins: no overlap, some below `hi`.
    for i in 1..y.len() {
        y[i] = y[i].max(y[i - 1] + LABEL_H);
    }
    let mut out = vec![0.0; want.len()];
    for (k, &i) in order.iter().enumerate() {
        out[i] = y[k];
    }
    out
}

fn text(x: f64, y: f64, s: impl Into<String>) -> Text {
    Text::new(s).set("x", num(x)).set("y", num(y))
}

/// A label of two lines centred at `cy`, anchored at `x` (`end` or `start`).
fn label(x: f64, cy: f64, anchor: &str, head: &str, sub: &str) -> Group {
    Group::new()
        .add(
            text(x, cy - 2.0, head)
                .set("text-anchor", anchor)
                .set("class", "head"),
        )
        .add(
            text(x, cy + 11.0, sub)
                .set("text-anchor", anchor)
                .set("class", "sub"),
        )
}

/// Height of a panel's header (its title and summary lines).
const HEADER_H: f64 = 56.0;

/// Where a panel's parts go: its regions and physical boxes, the two strips' scales, and
/// the vertical positions they hang from.
struct Layout {
    regions: Vec<Region>,
    boxes: Vec<PhysBox>,
    vaxis: Axis,
    paxis: Axis,
    /// The panel's top and the body's bottom, px from the document's top.
    top: f64,
    bottom: f64,
    /// Where address 0 of each strip is drawn.
    v_bottom: f64,
    p_bottom: f64,
}

impl Layout {
    /// Lays out the panel of `dump`, `top` px from the document's top.
    fn new(dump: &Dump, m: &Machine, top: f64) -> Layout {
        let regions = regions(dump, m);
        let vaxis = Axis::new(&cover(
            &regions
                .iter()
                .map(|r| (r.first_va, r.end_va))
                .collect::<Vec<_>>(),
        ));
        let boxes = phys_boxes(&regions, m);
        let paxis = Axis::new(&cover(
            &boxes.iter().map(|b| (b.start, b.end)).collect::<Vec<_>>(),
        ));
        let strip_h = vaxis.height().max(paxis.height());
        // Labels may need more room than the strips.
        let labels_h = |k: usize| k as f64 * LABEL_H;
        let body_h = strip_h
            .max(labels_h(regions.len()))
            .max(labels_h(boxes.len()));
        let bottom = top + HEADER_H + body_h + 10.0;
        // Strips are centred vertically in the body.
        let v_bottom = bottom - (body_h - vaxis.height()) / 2.0;
        let p_bottom = bottom - (body_h - paxis.height()) / 2.0;
        Layout {
            regions,
            boxes,
            vaxis,
            paxis,
            top,
            bottom,
            v_bottom,
            p_bottom,
        }
    }

    /// The y of virtual address `a`.
    fn vy(&self, a: u64) -> f64 {
        self.v_bottom - self.vaxis.pos(a)
    }

    /// The y of physical address `a`.
    fn py(&self, a: u64) -> f64 {
        self.p_bottom - self.paxis.pos(a)
    }
}

/// One panel: the drawing of `dump` (number `n` of `total`), `top` px from the document's
/// top. Returns the group and its height.
fn panel(dump: &Dump, n: usize, total: usize, m: &Machine, top: f64) -> (Group, f64) {
    let l = Layout::new(dump, m, top);
    let mut g = panel_header(&l, dump, n, total);
    g = g.add(bands(&l));
    g = virtual_strip(g, &l, m);
    g = physical_strip(g, &l, m);
    g = strip_ends(g, &l);
    let legend_top = l.bottom + 14.0;
    let (legend, legend_h) = legend(&l.regions, legend_top);
    g = g.add(legend);
    (g, legend_top + legend_h - top)
}

/// The panel's group with its title, summary and strip names.
fn panel_header(l: &Layout, dump: &Dump, n: usize, total: usize) -> Group {
    let user_pages: u64 = l
        .regions
        .iter()
        .filter(|r| r.kind.is_user_half())
        .map(Region::pages)
        .sum();
    let all_pages: u64 = l.regions.iter().map(Region::pages).sum();
    let what = if user_pages == 0 {
        "the kernel's page table (no user pages)".to_string()
    } else {
        format!(
            "a process: {user_pages} user page{} below KERNBASE",
            if user_pages == 1 { "" } else { "s" }
        )
    };
    Group::new()
        .set("class", "panel")
        .set("data-cr3", hex(u64::from(dump.cr3)))
        .set("data-dump", n)
        .add(
            text(
                20.0,
                l.top + 22.0,
                format!(
                    "pgdump {n} of {total}: cr3={}, {what}",
                    hex(u64::from(dump.cr3))
                ),
            )
            .set("class", "title"),
        )
        .add(
            text(
                20.0,
                l.top + 40.0,
                format!(
                    "{all_pages} pages mapped in {} runs. Virtual addresses on the left, physical \
                     on the right; bands join each run's pages to its frames.",
                    dump.runs.len()
                ),
            )
            .set("class", "sub"),
        )
        .add(text(V_X + STRIP_W / 2.0, l.top + HEADER_H, "virtual").set("class", "axis"))
        .add(text(P_X + STRIP_W / 2.0, l.top + HEADER_H, "physical").set("class", "axis"))
}

/// The bands joining each run's pages to its frames: drawn first, under the strips, the
/// kernel's, then the user's on top.
fn bands(l: &Layout) -> Group {
    let mut bands = Group::new().set("class", "bands");
    let mut ordered: Vec<&Region> = l
        .regions
        .iter()
        .filter(|r| !r.kind.is_user_half())
        .collect();
    ordered.extend(l.regions.iter().filter(|r| r.kind.is_user_half()));
    for r in ordered {
        let opacity = if r.kind.is_user_half() { 0.55 } else { 0.3 };
        let shapes = band_shapes(r);
        for (v0, v1, p0, p1, run) in shapes {
            // A one-pixel minimum so a page's band stays visible.
            let (a, b) = (l.vy(v0), l.vy(v1).min(l.vy(v0) - 1.0));
            let (c, d) = (l.py(p0), l.py(p1).min(l.py(p0) - 1.0));
            let pts = format!(
                "{},{} {},{} {},{} {},{}",
                num(V_X + STRIP_W),
                num(a),
                num(V_X + STRIP_W),
                num(b),
                num(P_X),
                num(d),
                num(P_X),
                num(c)
            );
            bands = bands.add(
                Polygon::new()
                    .set("points", pts)
                    .set("fill", r.kind.colour())
                    .set("fill-opacity", opacity)
                    .set("class", "band")
                    .set("data-run", run.clone())
                    .add(Title::new(run)),
            );
        }
    }
    bands
}

/// The bands of region `r` as (first va, end va, first pa, end pa, run): one per piece, or
/// one for the whole region when its pieces are too many to draw.
fn band_shapes(r: &Region) -> Vec<(u64, u64, u64, u64, String)> {
    if r.pieces.len() <= MAX_BANDS_PER_REGION {
        r.pieces
            .iter()
            .map(|p| {
                let pa = u64::from(p.pa);
                let len = u64::from(p.pages()) * PGSIZE;
                (
                    u64::from(p.first_va),
                    u64::from(p.first_va) + len,
                    pa,
                    pa + len,
                    format_run(p),
                )
            })
            .collect()
    } else {
        let lo = r.pieces.iter().map(|p| u64::from(p.pa)).min().unwrap_or(0);
        let hi = r
            .pieces
            .iter()
            .map(|p| u64::from(p.pa) + u64::from(p.pages()) * PGSIZE)
            .max()
            .unwrap_or(0);
        vec![(
            r.first_va,
            r.end_va,
            lo,
            hi,
            format!("{} runs, scattered", r.pieces.len()),
        )]
    }
}

/// The virtual strip: its regions, its gaps and their labels.
fn virtual_strip(mut g: Group, l: &Layout, m: &Machine) -> Group {
    // The virtual strip.
    for s in &l.vaxis.segs {
        let (y0, y1) = (l.v_bottom - s.y1, l.v_bottom - s.y0);
        if s.broken {
            g = g.add(gap_box(V_X, y0, y1, s.end - s.start, "unmapped"));
        }
    }
    let mut want = Vec::new();
    for r in &l.regions {
        let (y0, y1) = (l.vy(r.end_va), l.vy(r.first_va));
        g = g.add(vregion_box(r, y0, y1));
        want.push((y0 + y1) / 2.0);
    }
    let top_body = l.top + HEADER_H + 6.0;
    let placed = spread(&want, top_body, l.bottom);
    for ((r, &y), &w) in l.regions.iter().zip(&placed).zip(&want) {
        let mark = landmark(r.first_va, true, m).map_or(String::new(), |l| format!("{l} "));
        let head = format!(
            "{} · {} page{} · {}",
            r.kind.name(),
            r.pages(),
            if r.pages() == 1 { "" } else { "s" },
            r.flags()
        );
        let sub = format!("{mark}{}-{}", hex(r.first_va), hex(r.end_va - 1));
        g = g
            .add(label(V_LABEL_X, y, "end", &head, &sub).set("class", "vlabel"))
            .add(leader(V_LABEL_X + 4.0, y, V_X - 2.0, w));
    }

    g
}

/// The box of region `r` on the virtual strip, from `y0` to `y1`.
fn vregion_box(r: &Region, y0: f64, y1: f64) -> Group {
    let pages = r.pages();
    let fl = r.flags();
    let tip = format!(
        "{}: {}-{}, {pages} pages, {fl}",
        r.kind.name(),
        hex(r.first_va),
        hex(r.end_va - 1)
    );
    let mut b = Group::new()
        .set("class", "vregion")
        .set("data-kind", r.kind.name())
        .set("data-first", hex(r.first_va))
        .set("data-last", hex(r.end_va - 1))
        .set("data-pages", pages)
        .set("data-flags", fl.clone())
        .add(
            Rectangle::new()
                .set("x", num(V_X))
                .set("y", num(y0))
                .set("width", num(STRIP_W))
                .set("height", num(y1 - y0))
                .set("fill", r.kind.colour())
                .set("stroke", "#333")
                .set("stroke-width", 0.6),
        )
        .add(Title::new(tip));
    if y1 - y0 >= 12.0 {
        b = b.add(
            text(V_X + STRIP_W / 2.0, (y0 + y1) / 2.0 + 4.0, r.kind.short())
                .set("class", "inbox")
                .set("text-anchor", "middle"),
        );
    }
    b
}

/// The physical strip: RAM's boxes, the gaps and their labels.
fn physical_strip(mut g: Group, l: &Layout, m: &Machine) -> Group {
    let top_body = l.top + HEADER_H + 6.0;
    // The physical strip.
    for s in &l.paxis.segs {
        if s.broken {
            let what = if s.start >= m.ram_end { "no RAM" } else { "" };
            g = g.add(gap_box(
                P_X,
                l.p_bottom - s.y1,
                l.p_bottom - s.y0,
                s.end - s.start,
                what,
            ));
        }
    }
    let mut want = Vec::new();
    for b in &l.boxes {
        let (y0, y1) = (l.py(b.end), l.py(b.start));
        g = g.add(
            Group::new()
                .set("class", "pregion")
                .set("data-name", b.name.clone())
                .set("data-first", hex(b.start))
                .set("data-last", hex(b.end - 1))
                .add(
                    Rectangle::new()
                        .set("x", num(P_X))
                        .set("y", num(y0))
                        .set("width", num(STRIP_W))
                        .set("height", num(y1 - y0))
                        .set("fill", b.fill)
                        .set("stroke", "#333")
                        .set("stroke-width", 0.6),
                )
                .add(Title::new(format!(
                    "{}: {}-{}",
                    b.name,
                    hex(b.start),
                    hex(b.end - 1)
                ))),
        );
        want.push((y0 + y1) / 2.0);
    }
    let placed = spread(&want, top_body, l.bottom);
    for ((b, &y), &w) in l.boxes.iter().zip(&placed).zip(&want) {
        let mark = landmark(b.start, false, m).map_or(String::new(), |l| format!("{l} "));
        let head = format!("{} · {}", b.name, size(b.end - b.start));
        let sub = format!("{mark}{}-{}", hex(b.start), hex(b.end - 1));
        g = g
            .add(label(P_LABEL_X, y, "start", &head, &sub).set("class", "plabel"))
            .add(leader(P_X + STRIP_W + 2.0, w, P_LABEL_X - 4.0, y));
    }
    g
}

/// 0 and 4 GiB at the strips' ends.
fn strip_ends(mut g: Group, l: &Layout) -> Group {
    for (x, b, h) in [
        (V_X, l.v_bottom, l.vaxis.height()),
        (P_X, l.p_bottom, l.paxis.height()),
    ] {
        g = g
            .add(
                text(x - 4.0, b + 4.0, "0")
                    .set("class", "tick")
                    .set("text-anchor", "end"),
            )
            .add(
                text(x - 4.0, b - h + 4.0, "4 GiB")
                    .set("class", "tick")
                    .set("text-anchor", "end"),
            );
    }
    g
}

/// The leader line from a label's edge to its box.
fn leader(x0: f64, y0: f64, x1: f64, y1: f64) -> Polyline {
    let mid = if x0 < x1 { x1 - 14.0 } else { x1 + 14.0 };
    Polyline::new()
        .set(
            "points",
            format!(
                "{},{} {},{} {},{}",
                num(x0),
                num(y0),
                num(mid),
                num(y1),
                num(x1),
                num(y1)
            ),
        )
        .set("class", "leader")
}

/// A broken stretch of a strip: dashed, with its size.
fn gap_box(x: f64, y0: f64, y1: f64, bytes: u64, what: &str) -> Group {
    let zig = |y: f64| {
        Polyline::new()
            .set(
                "points",
                format!(
                    "{},{} {},{} {},{} {},{}",
                    num(x - 6.0),
                    num(y + 3.0),
                    num(x + 2.0),
                    num(y - 3.0),
                    num(x + STRIP_W - 2.0),
                    num(y + 3.0),
                    num(x + STRIP_W + 6.0),
                    num(y - 3.0)
                ),
            )
            .set("class", "break")
    };
    Group::new()
        .set("class", "gap")
        .add(
            Rectangle::new()
                .set("x", num(x))
                .set("y", num(y0))
                .set("width", num(STRIP_W))
                .set("height", num(y1 - y0))
                .set("fill", "white")
                .set("stroke", "#999")
                .set("stroke-dasharray", "3 3"),
        )
        .add(zig(y0 + 4.0))
        .add(zig(y1 - 4.0))
        .add(
            text(
                x + STRIP_W / 2.0,
                (y0 + y1) / 2.0 + 4.0,
                format!("{what} {}", size(bytes)).trim().to_string(),
            )
            .set("class", "gaptext")
            .set("text-anchor", "middle"),
        )
}

/// The legend: the kinds in this panel, the flags, the scale. Returns it and its height.
fn legend(regions: &[Region], top: f64) -> (Group, f64) {
    let mut kinds: Vec<Kind> = Vec::new();
    for r in regions {
        if !kinds.contains(&r.kind) {
            kinds.push(r.kind);
        }
    }
    let mut g = Group::new().set("class", "legend");
    let per_row = 5;
    for (i, k) in kinds.iter().enumerate() {
        let x = 20.0 + (i % per_row) as f64 * 240.0;
        let y = top + (i / per_row) as f64 * 18.0;
        g = g
            .add(
                Rectangle::new()
                    .set("x", num(x))
                    .set("y", num(y))
                    .set("width", 12)
                    .set("height", 12)
                    .set("fill", k.colour())
                    .set("stroke", "#333")
                    .set("stroke-width", 0.6),
            )
            .add(text(x + 17.0, y + 10.5, k.name()).set("class", "sub"));
    }
    let rows = kinds.len().div_ceil(per_row) as f64;
    let y = top + rows * 18.0 + 12.0;
    let notes = [
        "Flags: r- read-only, rw writable (PTE_W); u user (PTE_U), k kernel only. Pages are 4 KiB.",
        "Scale: each box grows 8 px per doubling of its size (a page is the smallest box), addresses \
         are linear inside a box; dashed boxes are unmapped or have no RAM, drawn short.",
    ];
    for (i, n) in notes.iter().enumerate() {
        g = g.add(text(20.0, y + i as f64 * 15.0, *n).set("class", "sub"));
    }
    (g, rows * 18.0 + 12.0 + notes.len() as f64 * 15.0 + 10.0)
}

const STYLE: &str = "text { font-family: DejaVu Sans, Verdana, sans-serif; fill: #222 } \
.title { font-size: 15px; font-weight: bold } .head { font-size: 11.5px; font-weight: bold } \
.sub { font-size: 10.5px } .inbox { font-size: 10px; fill: #fff; font-weight: bold } \
.axis { font-size: 12px; font-style: italic; text-anchor: middle } \
.tick { font-size: 10px; fill: #555 } .gaptext { font-size: 9.5px; fill: #777 } \
.leader { fill: none; stroke: #888; stroke-width: 0.7 } \
.break { fill: none; stroke: #999; stroke-width: 1 } .panel-rule { stroke: #ccc }";

/// The SVG document for `dumps` (at most [`MAX_PANELS`] drawn; the rest, and `skipped` more
/// the guest asked for, counted in a note).
pub fn render(dumps: &[Dump], skipped: usize, m: &Machine) -> String {
    let mut top = 10.0;
    let mut doc_groups = Vec::new();
    let total = dumps.len() + skipped;
    for (i, d) in dumps.iter().take(MAX_PANELS).enumerate() {
        let (g, h) = panel(d, i + 1, total, m, top);
        doc_groups.push(g);
        top += h;
        doc_groups.push(
            Group::new().add(
                Line::new()
                    .set("x1", 10)
                    .set("x2", WIDTH - 10.0)
                    .set("y1", num(top))
                    .set("y2", num(top))
                    .set("class", "panel-rule"),
            ),
        );
        top += 10.0;
    }
    let drawn = dumps.len().min(MAX_PANELS);
    if total > drawn {
        top += 10.0;
        doc_groups.push(
            Group::new().add(
                text(
                    20.0,
                    top,
                    format!(
                        "{} more dumps not drawn (at most {MAX_PANELS} per file, 1 MiB of dump text).",
                        total - drawn
                    ),
                )
                .set("class", "head"),
            ),
        );
        top += 10.0;
    }
    let height = top + 10.0;
    let mut doc = Document::new()
        .set("width", WIDTH)
        .set("height", num(height))
        .set("viewBox", format!("0 0 {WIDTH} {}", num(height)))
        .add(svg::node::element::Style::new(STYLE))
        .add(
            Rectangle::new()
                .set("width", "100%")
                .set("height", "100%")
                .set("fill", "white"),
        );
    for g in doc_groups {
        doc = doc.add(g);
    }
    let mut out = String::new();
    let _ = writeln!(out, "{doc}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::debug::pgdump::parse_dumps;

    const TOUR: &str = "pgdump cr3=0x00174000
0x00000000-0x00000fff -> 0x00175000 r-u
0x00001000-0x00003fff -> 0x00177000 r-u
0x00004000-0x00004fff -> 0x0017a000 rwu
0x00005000-0x00005fff -> 0x0017b000 rwk
0x00006000-0x00007fff -> 0x0017c000 rwu
0x00008000-0x0000afff -> 0x0017e000 rwu
0x80000000-0x800fffff -> 0x00000000 rwk
0x80100000-0x80113fff -> 0x00100000 r-k
0x80114000-0x8dffffff -> 0x00114000 rwk
0x8e000000-0x8e046fff -> 0x0e000000 r-k
0xfe000000-0xffffffff -> 0xfe000000 rwk
pgdump end: 65618 pages, 0 translate mismatches
";

    fn machine() -> Machine {
        Machine {
            phystop: 0xe00_0000,
            ram_end: 0x1000_0000,
            kernel_end: Some(0x131000),
        }
    }

    #[test]
    fn regions_follow_exec_layout_and_kmap() {
        let d = &parse_dumps(TOUR)[0];
        let r = regions(d, &machine());
        let got: Vec<(&str, u64, u64)> = r
            .iter()
            .map(|r| (r.kind.name(), r.first_va, r.pages()))
            .collect();
        assert_eq!(
            got,
            [
                ("text", 0, 4),
                ("data/bss", 0x4000, 1),
                ("guard page", 0x5000, 1),
                // The run 0x6000-0x7fff is cut: its first page is the stack, the next heap.
                ("stack", 0x6000, 1),
                ("heap", 0x7000, 4),
                ("kmap: I/O space, low memory", 0x8000_0000, 256),
                ("kmap: kernel text, rodata", 0x8010_0000, 20),
                ("kmap: kernel data, free memory", 0x8011_4000, 57068),
                ("boot modules", 0x8e00_0000, 71),
                ("kmap: DEVSPACE (devices)", 0xfe00_0000, 8192),
            ]
        );
        assert_eq!(
            r[4].pieces[0].pa, 0x17d000,
            "the heap's piece keeps its frame"
        );
        assert_eq!(r[0].flags(), "r-u");
        assert_eq!(r[2].flags(), "rwk");
    }

    #[test]
    fn without_a_guard_page_user_pages_are_named_by_flags() {
        let d = &parse_dumps(
            "pgdump cr3=0x1000\n0x00000000-0x00000fff -> 0x00175000 r-u\n\
             0x00001000-0x00001fff -> 0x00176000 rwu\npgdump end: 2 pages\n",
        )[0];
        let kinds: Vec<Kind> = regions(d, &machine()).iter().map(|r| r.kind).collect();
        assert_eq!(kinds, [Kind::UserReadOnly, Kind::UserWritable]);
    }

    #[test]
    fn a_page_and_224_mib_both_get_readable_boxes() {
        let a = Axis::new(&cover(&[(0, 4096), (0x8011_4000, 0x8e00_0000)]));
        let page = a.pos(4096) - a.pos(0);
        let kmap = a.pos(0x8e00_0000) - a.pos(0x8011_4000);
        assert_eq!(page, MIN_H);
        assert!(kmap > 100.0 && kmap < 200.0, "{kmap}");
        assert!(a.height() < 400.0);
    }

    #[test]
    fn labels_never_overlap() {
        let y = spread(&[100.0, 101.0, 102.0, 300.0, 99.0], 0.0, 1000.0);
        let mut s = y.clone();
        s.sort_by(f64::total_cmp);
        for w in s.windows(2) {
            assert!(w[1] - w[0] >= LABEL_H - 1e-9, "{y:?}");
        }
        assert!(y.iter().all(|&v| v >= LABEL_H / 2.0));
        // Too many for the room: still no overlap.
        let y = spread(&[5.0; 10], 0.0, 50.0);
        for w in y.windows(2) {
            assert!(w[1] - w[0] >= LABEL_H - 1e-9);
        }
    }

    #[test]
    fn user_frames_get_their_own_physical_box() {
        let d = &parse_dumps(TOUR)[0];
        let m = machine();
        let b = phys_boxes(&regions(d, &m), &m);
        let names: Vec<(&str, u64)> = b.iter().map(|b| (b.name.as_str(), b.start)).collect();
        assert_eq!(
            names,
            [
                ("low memory, I/O space", 0),
                ("kernel text, rodata", 0x100000),
                ("kernel data, bss", 0x114000),
                ("free memory (kalloc)", 0x131000),
                ("frames of user pages (11)", 0x175000),
                ("free memory (kalloc)", 0x181000),
                ("boot modules (not in the free list)", 0xe00_0000),
                ("MMIO hole: IOAPIC, LAPIC", 0xfe00_0000),
            ]
        );
    }

    #[test]
    fn scattered_regions_and_many_dumps_stay_bounded() {
        // A heap of 100 pages whose frames go down while its addresses go up: 100 runs.
        let mut text = String::from(
            "pgdump cr3=0x1000\n0x00005000-0x00005fff -> 0x00300000 rwk\n\
             0x00006000-0x00006fff -> 0x00301000 rwu\n",
        );
        for i in 0..100u32 {
            text.push_str(&format_run(&Run {
                first_va: 0x7000 + i * 0x1000,
                last_va: 0x7000 + i * 0x1000,
                pa: 0x0090_0000 - i * 0x2000,
                writable: true,
                user: true,
            }));
            text.push('\n');
        }
        text.push_str("pgdump end: 102 pages\n");
        let d = parse_dumps(&text);
        let svg = render(&d, 40, &machine());
        let doc = roxmltree::Document::parse(&svg).unwrap();
        let runs: Vec<&str> = doc
            .descendants()
            .filter_map(|n| n.attribute("data-run"))
            .collect();
        assert_eq!(runs.len(), 3, "{runs:?}");
        assert!(runs.contains(&"100 runs, scattered"), "{runs:?}");
        assert!(svg.contains("40 more dumps not drawn"));
    }

    #[test]
    fn render_is_xml_with_a_band_per_piece() {
        let dumps = parse_dumps(&format!("{TOUR}{TOUR}"));
        let svg = render(&dumps, 0, &machine());
        let doc = roxmltree::Document::parse(&svg).expect("well-formed");
        let panels = doc
            .descendants()
            .filter(|n| n.attribute("class") == Some("panel"))
            .count();
        assert_eq!(panels, 2);
        let bands = doc
            .descendants()
            .filter(|n| n.attribute("class") == Some("band"))
            .count();
        assert_eq!(bands, 2 * 12, "11 runs, one of them cut in two");
    }
}
