/* The compat-caller check's program for arm64 kernels: 32-bit (AArch32,
 * A32) code that forks a child and never reaps it. It waits with
 * waitid(P_PID, child, NULL, WEXITED|WNOWAIT, NULL) until the child is a
 * zombie (the kernel's sched_process_wait sees it; nothing is reaped),
 * then calls timer_getoverrun(0), whose AArch32 number, 260, is arm64's
 * wait4: a tracer that read 32-bit calls by the 64-bit table would record
 * a failed wait4 there. Built with Debian's arm-linux-gnueabihf binutils:
 * no C library. */
	.syntax unified
	.arm
	.text
	.globl _start
_start:
	mov r7, #2		@ fork
	svc #0
	cmp r0, #0
	beq child
	blt fail
	mov r1, r0		@ the child's pid
	mov r0, #1		@ P_PID
	mov r2, #0		@ no siginfo
	ldr r3, =0x01000004	@ WEXITED | WNOWAIT
	mov r4, #0		@ no rusage
	ldr r7, =280		@ waitid
	svc #0
	cmp r0, #0
	bne fail
	mov r0, #0		@ timer_getoverrun(0): EINVAL
	ldr r7, =260
	svc #0
	mov r0, #0
	b exit
child:
	mov r0, #0
	b exit
fail:
	mov r0, #1
exit:
	mov r7, #248		@ exit_group
	svc #0
