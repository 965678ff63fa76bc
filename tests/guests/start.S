/* Entry of every tiny guest: record the entry register state, switch to
 * the guest's own stack, call main(), halt. */
	.section .text.entry, "ax"
	.globl _start
	.code64
_start:
	movq %rsi, entry_rsi(%rip)
	movq %rsp, entry_rsp(%rip)
	movw %cs, %ax
	movw %ax, entry_cs(%rip)
	movw %ds, %ax
	movw %ax, entry_ds(%rip)
	movw %ss, %ax
	movw %ax, entry_ss(%rip)
	movq %cr0, %rax
	movq %rax, entry_cr0(%rip)
	movq %cr3, %rax
	movq %rax, entry_cr3(%rip)
	movq %cr4, %rax
	movq %rax, entry_cr4(%rip)
	pushfq
	popq %rax
	movq %rax, entry_rflags(%rip)
	leaq stack_top(%rip), %rsp
	call main
1:	cli
	hlt
	jmp 1b

	.bss
	.globl entry_rsi, entry_rsp, entry_cs, entry_ds, entry_ss
	.globl entry_cr0, entry_cr3, entry_cr4, entry_rflags
	.balign 8
entry_rsi:	.quad 0
entry_rsp:	.quad 0
entry_cr0:	.quad 0
entry_cr3:	.quad 0
entry_cr4:	.quad 0
entry_rflags:	.quad 0
entry_cs:	.word 0
entry_ds:	.word 0
entry_ss:	.word 0
	.balign 16
stack:	.skip 16384
stack_top:
	.section .note.GNU-stack, "", @progbits
