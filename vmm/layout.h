/* Guest physical layout (x86_64). Every guest-physical constant lives here. */
#ifndef WISP_LAYOUT_H
#define WISP_LAYOUT_H

#define WISP_PAGE_SIZE          0x1000ULL

/* Low memory used by the direct boot (all below 1 MiB, inside e820 RAM
 * except where noted). */
#define WISP_BOOT_GDT_ADDR      0x500ULL      /* GDT, 4 entries */
#define WISP_BOOT_IDT_ADDR      0x520ULL      /* empty IDT */
#define WISP_ZERO_PAGE_ADDR     0x7000ULL     /* struct boot_params */
#define WISP_BOOT_STACK_ADDR    0x8ff0ULL     /* initial %rsp */
#define WISP_PML4_ADDR          0x9000ULL     /* identity page tables */
#define WISP_PDPTE_ADDR         0xa000ULL
#define WISP_PDE_ADDR           0xb000ULL     /* 4 pages: first 4 GiB in 2 MiB pages */
#define WISP_CMDLINE_ADDR       0x20000ULL
#define WISP_CMDLINE_MAX        4096ULL       /* including the NUL */
#define WISP_EBDA_START         0x9fc00ULL    /* e820 RAM ends here; MP table lives here */
#define WISP_MPTABLE_ADDR       WISP_EBDA_START
#define WISP_HIMEM_START        0x100000ULL   /* 1 MiB: e820 RAM from here on */
#define WISP_KERNEL_DEFAULT_LOAD 0x1000000ULL /* bzImage protected-mode payload */

/* The MMIO gap below 4 GiB: no RAM in [GAP_START, 4 GiB). */
#define WISP_MMIO_GAP_START     0xc0000000ULL
#define WISP_MMIO_GAP_END       0x100000000ULL
#define WISP_MMIO_GAP_SIZE      (WISP_MMIO_GAP_END - WISP_MMIO_GAP_START)
/* RAM above the gap continues here. */
#define WISP_HIGH_RAM_START     WISP_MMIO_GAP_END

/* virtio-mmio devices: 4 KiB windows from here, IRQs from WISP_IRQ_VIRTIO_BASE. */
#define WISP_VIRTIO_MMIO_BASE   0xd0000000ULL
#define WISP_VIRTIO_MMIO_SIZE   0x1000ULL
#define WISP_VIRTIO_MMIO_MAX    16
#define WISP_IRQ_VIRTIO_BASE    5
/* IOAPIC pins usable by devices: 5..23 */
#define WISP_IRQ_MAX            23

/* KVM's real-mode support pages (VMX): 3 pages of TSS and one of identity
 * page table, just below the IOAPIC/LAPIC/firmware area, inside the gap. */
#define WISP_KVM_IDENTITY_MAP_ADDR 0xfeffc000ULL
#define WISP_KVM_TSS_ADDR          0xfeffd000ULL

/* Firecracker-style boot timer: the guest writes 123 here once it is up
 * (registered with --boot-timer). First page of the MMIO gap. */
#define WISP_BOOT_TIMER_ADDR    WISP_MMIO_GAP_START
#define WISP_BOOT_TIMER_SIZE    0x1000ULL

#define WISP_IOAPIC_ADDR        0xfec00000ULL
#define WISP_LAPIC_ADDR         0xfee00000ULL

/* Legacy devices */
#define WISP_SERIAL_PORT        0x3f8
#define WISP_SERIAL_IRQ         4
#define WISP_I8042_DATA_PORT    0x60
#define WISP_I8042_CMD_PORT     0x64
#define WISP_CMOS_INDEX_PORT    0x70    /* index 0x70, data 0x71 */

#define WISP_MAX_VCPUS          32
#define WISP_MIN_MEM_MIB        16ULL
#define WISP_MAX_MEM_MIB        (1024ULL * 1024ULL) /* 1 TiB */

#endif
